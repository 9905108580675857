class Api::V1::ArticlesController < Api::V1::BaseController
  DEFAULT_PER_PAGE = 10
  MAX_PER_PAGE = 50

  def index
    page = positive_param(:page, 1)
    per = [positive_param(:per, DEFAULT_PER_PAGE), MAX_PER_PAGE].min
    scope = Article.published
    total = scope.count
    articles = scope.newest_first.includes(:user).offset((page - 1) * per).limit(per)

    render json: {
      articles: articles.map { |article| article_json(article, with_content: false) },
      meta: { current_page: page, per_page: per, total_count: total, total_pages: (total + per - 1) / per },
    }, status: :ok
  end

  def show
    article = Article.published.find(params[:id])
    render json: article_json(article, with_content: true), status: :ok
  end

  private

    # A missing, non-numeric or non-positive value falls back to the default.
    def positive_param(name, default)
      value = params[name].to_s
      value.match?(/\A[1-9]\d*\z/) ? value.to_i : default
    end

    def article_json(article, with_content:)
      json = {
        id: article.id,
        title: article.title,
        status: article.status,
        created_at: article.created_at,
        updated_at: article.updated_at,
        user: { id: article.user.id, name: article.user.name },
      }
      json[:content] = article.content if with_content
      json
    end
end
