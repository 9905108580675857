require "rails_helper"

RSpec.describe Article, type: :model do
  it "is valid with a title, content and a user" do
    expect(build(:article)).to be_valid
  end

  it "requires a title and content" do
    article = build(:article, title: "", content: "")
    expect(article).not_to be_valid
    expect(article.errors.attribute_names).to include(:title, :content)
  end

  it "requires a user" do
    expect(build(:article, user: nil)).not_to be_valid
  end

  it "starts as a draft and can be published" do
    article = create(:article)
    expect(article).to be_draft
    article.published!
    expect(article.reload).to be_published
  end

  it "lists only published articles under .published, newest first" do
    old = create(:article, :published, created_at: 2.days.ago)
    new = create(:article, :published, created_at: 1.day.ago)
    create(:article)
    expect(Article.published.newest_first).to eq [new, old]
  end
end
