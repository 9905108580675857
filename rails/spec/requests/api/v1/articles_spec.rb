require "rails_helper"

RSpec.describe "Api::V1::Articles", type: :request do
  describe "GET /api/v1/articles" do
    it "returns published articles only, newest first, with their authors" do
      old = create(:article, :published, created_at: 2.days.ago)
      new = create(:article, :published, created_at: 1.day.ago)
      create(:article)

      get api_v1_articles_path

      expect(response).to have_http_status(:ok)
      res = JSON.parse(response.body)
      expect(res["articles"].map { |a| a["id"] }).to eq [new.id, old.id]
      expect(res["articles"].first["user"]).to eq("id" => new.user.id, "name" => new.user.name)
      expect(res["articles"].first).not_to have_key("content")
      expect(res["meta"]).to include("current_page" => 1, "total_count" => 2, "total_pages" => 1)
    end

    it "paginates with page and per" do
      articles = Array.new(5) { |i| create(:article, :published, created_at: (i + 1).hours.ago) }

      get api_v1_articles_path, params: { page: 2, per: 2 }

      res = JSON.parse(response.body)
      expect(res["articles"].map { |a| a["id"] }).to eq articles[2..3].map(&:id)
      expect(res["meta"]).to include("current_page" => 2, "per_page" => 2, "total_pages" => 3)
    end

    it "falls back to the first page for a page it cannot read" do
      create(:article, :published)

      get api_v1_articles_path, params: { page: "abc", per: "-1" }

      res = JSON.parse(response.body)
      expect(res["meta"]).to include("current_page" => 1, "per_page" => 10)
      expect(res["articles"].size).to eq 1
    end
  end

  describe "GET /api/v1/articles/:id" do
    it "returns a published article with its content" do
      article = create(:article, :published)

      get api_v1_article_path(article)

      expect(response).to have_http_status(:ok)
      res = JSON.parse(response.body)
      expect(res).to include("id" => article.id, "title" => article.title, "content" => article.content)
    end

    it "answers 404 as JSON for a draft" do
      get api_v1_article_path(create(:article))

      expect(response).to have_http_status(:not_found)
      expect(JSON.parse(response.body)).to eq("error" => "Not Found")
    end

    it "answers 404 as JSON for a missing article" do
      get api_v1_article_path(id: 0)

      expect(response).to have_http_status(:not_found)
      expect(JSON.parse(response.body)).to eq("error" => "Not Found")
    end
  end
end
